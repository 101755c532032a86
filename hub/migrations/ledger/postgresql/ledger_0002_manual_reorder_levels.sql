-- A SKU's manual min/max from the catalog (empty: the rules' learned levels).
ALTER TABLE skus ADD COLUMN reorder_min INTEGER;
ALTER TABLE skus ADD COLUMN reorder_max INTEGER;
