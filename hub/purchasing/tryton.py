"""The Tryton connector: the contract's operations mapped onto Tryton's purchase and stock models.

Spoken over Tryton's JSON-RPC (tryton_rpc.py) as any integration would, with a Tryton user
of its own (groups Purchase and Stock). The mapping, worked through in docs/purchasing.md:

    contract                  Tryton
    supplier code             party.party.code
    SKU / GTIN                product.product.code / product.identifier (type ean)
    catalog supplier          purchase.product_supplier: sequence → priority, lead_time,
                              prices: the smallest quantity → minimum, its unit_price → price
    order (one per supplier)  purchase.purchase with a purchase.line per requisition, quoted
                              and confirmed; the requisition's idempotency key is the line's note
    PO number / line id       purchase.number / purchase.line id
    expected date             purchase.line delivery_date: its incoming moves' planned date (the
                              supplier's confirmed date), else the date ordered for (delivery_date_store)
    receipt per PO line       stock.shipment.in (reference = the receipt's key) over the line's
                              incoming stock.move, split to the quantity received, with its
                              stock.lot (expiry: expiration_date); received and done; the
                              inventory move goes to the location whose code is the hub's bin
    return                    stock.shipment.in.return (reference = key), a move from storage
                              to the supplier with origin the purchase line; waited, assigned, done
    cash                      none: Tryton keeps no cash figure per site (no cash limit)

Every write looks for what an earlier attempt with the same key made before making anything,
so a resend after a lost answer books nothing twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

import aiohttp

from hub.purchasing.connector import CentralError, Connector
from hub.purchasing.tryton_rpc import TrytonRpc
from hub.redact import url_for_log

log = logging.getLogger(__name__)
DAY_MS = 86_400_000
CONFIRMED = ("confirmed", "processing", "done", "cancelled")  # purchase states the hub reads as placed
RECENT_ORDERS = 300  # the most recent purchases read per poll


def to_date(epoch_ms: int) -> dt.date:
    """The UTC day of an epoch-milliseconds time (Tryton's dates are days)."""
    return dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC).date()


def to_ms(day: dt.date | None) -> int | None:
    """A Tryton day as epoch milliseconds at its UTC midnight (None stays None)."""
    return None if day is None else int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


def _first(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    return rows[0] if rows else None


class TrytonConnector(Connector):
    """Central purchasing = one Tryton database and one of its warehouses."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, database: str, user: str, password: str,
                 warehouse_code: str) -> None:
        self.rpc = TrytonRpc(session, base_url, database, user, password)
        self.warehouse_code = warehouse_code
        self.describe = f"Tryton at {url_for_log(base_url.rstrip('/'))} (database {database}, warehouse {warehouse_code})"
        self._warehouse: dict[str, Any] | None = None
        self._lot_fields: set[str] | None = None

    async def _search_read(self, model: str, domain: list[Any], fields: list[str], limit: int | None = None,
                           order: list[Any] | None = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self.rpc.model(model, "search_read", domain, 0, limit, order, fields)
        return rows

    async def warehouse(self) -> dict[str, Any]:
        """The site's warehouse: its id, input and storage locations (looked up once)."""
        if self._warehouse is None:
            row = _first(await self._search_read("stock.location", [("code", "=", self.warehouse_code),
                                                                    ("type", "=", "warehouse")],
                                                 ["input_location", "storage_location"]))
            if row is None:
                raise CentralError(f"{self.rpc.where} has no warehouse with code {self.warehouse_code!r}: set "
                                   "central.tryton_warehouse", retryable=False)
            self._warehouse = row
        return self._warehouse

    # ------------------------------------------------------------------ orders

    async def place_order(self, key: str, order: dict[str, Any]) -> dict[str, Any]:
        site, supplier = str(order["site"]), str(order["supplier"])
        lines = list(order["lines"])
        keys = {str(x["requisition_id"]): f"{site}:requisition:{x['requisition_id']}" for x in lines}
        placed = {row["note"]: row for row in await self._search_read(
            "purchase.line", [("note", "in", list(keys.values()))], ["note", "purchase", "purchase.state"])}
        answers: dict[str, dict[str, Any]] = {}
        new = [x for x in lines if keys[str(x["requisition_id"])] not in placed]
        if new:
            answers.update(await self._create_purchase(site, supplier, new, keys, int(order["requested_ms"])))
            placed = {row["note"]: row for row in await self._search_read(
                "purchase.line", [("note", "in", list(keys.values()))], ["note", "purchase", "purchase.state"])}
        # Confirm what is placed and not yet confirmed (new, or left in draft by an attempt cut short).
        for state, button in (("draft", "quote"), ("quotation", "confirm")):
            ids = sorted({row["purchase"] for row in placed.values() if row["purchase."]["state"] == state})
            if ids:
                await self.rpc.model("purchase.purchase", button, ids)
                if button == "quote":
                    await self.rpc.model("purchase.purchase", "confirm", ids)
        purchase_ids = sorted({row["purchase"] for row in placed.values()})
        orders = await self._orders([("id", "in", purchase_ids)]) if purchase_ids else []
        by_line = {(po["po_id"], line["line_id"]): po for po in orders for line in po["lines"]}
        number = {po["tryton_id"]: po["po_id"] for po in orders}
        for rid, line_key in keys.items():
            row = placed.get(line_key)
            if row is not None and (number.get(row["purchase"]), str(row["id"])) in by_line:
                answers[rid] = {"requisition_id": rid, "po_id": number[row["purchase"]], "line_id": str(row["id"])}
        for po in orders:
            po.pop("tryton_id")
        return {"ok": True, "lines": [answers[r] for r in keys if r in answers], "purchase_orders": orders}

    async def _create_purchase(self, site: str, supplier: str, lines: list[dict[str, Any]], keys: dict[str, str],
                               requested_ms: int) -> dict[str, dict[str, Any]]:
        """One draft purchase for the new lines; lines Tryton cannot take are answered as refused."""
        refused: dict[str, dict[str, Any]] = {}

        def refuse(line: dict[str, Any], reason: str) -> None:
            refused[str(line["requisition_id"])] = {"requisition_id": str(line["requisition_id"]), "refused": reason}

        party = _first(await self._search_read("party.party", [("code", "=", supplier)], ["addresses"]))
        if party is None:
            for line in lines:
                refuse(line, f"Tryton has no party with code {supplier!r}: add the supplier or fix its code")
            return refused
        if not party["addresses"]:
            for line in lines:
                refuse(line, f"supplier {supplier!r} has no address in Tryton (a purchase needs an invoice address)")
            return refused
        products = {row["code"]: row for row in await self._search_read(
            "product.product", [("code", "in", sorted({str(x["sku"]) for x in lines}))],
            ["code", "purchasable", "purchase_uom"])}
        creates = []
        for line in lines:
            product = products.get(str(line["sku"]))
            if product is None:
                refuse(line, f"Tryton has no product with code {line['sku']!r}")
                continue
            if not product["purchasable"]:
                refuse(line, f"product {line['sku']!r} is not purchasable in Tryton")
                continue
            values: dict[str, Any] = {"product": product["id"], "quantity": float(line["qty"]),
                                      "unit": product["purchase_uom"],
                                      "unit_price": Decimal(str(line.get("unit_price", 0))),
                                      "note": keys[str(line["requisition_id"])], "description": str(line["sku"])}
            if line.get("expected_ms") is not None:
                values.update(delivery_date_edit=True, delivery_date_store=to_date(int(line["expected_ms"])))
            creates.append(values)
        if not creates:
            return refused
        wh = await self.warehouse()
        purchase = {"party": party["id"], "invoice_address": party["addresses"][0], "warehouse": wh["id"],
                    "purchase_date": to_date(requested_ms), "description": f"shelfsignal {site}",
                    "lines": [("create", creates)]}
        try:
            await self.rpc.model("purchase.purchase", "create", [purchase])
        except CentralError as err:
            if err.retryable:
                raise
            for line in lines:
                if str(line["requisition_id"]) not in refused:
                    refuse(line, str(err))
        return refused

    async def purchase_orders(self, site: str) -> list[dict[str, Any]]:
        wh = await self.warehouse()
        orders = await self._orders([("warehouse", "=", wh["id"]), ("state", "in", list(CONFIRMED))])
        for po in orders:
            po.pop("tryton_id")
            po["site"] = site
        return orders

    async def _orders(self, domain: list[Any]) -> list[dict[str, Any]]:
        """Purchases as the contract's PurchaseOrder, with received quantities from their done moves."""
        purchases = await self._search_read("purchase.purchase", domain,
                                            ["number", "state", "purchase_date", "party.code"], RECENT_ORDERS,
                                            [("id", "DESC")])
        if not purchases:
            return []
        lines = await self._search_read("purchase.line", [("purchase", "in", [p["id"] for p in purchases]),
                                                          ("type", "=", "line")],
                                        ["purchase", "product.code", "quantity", "unit.symbol", "unit_price",
                                         "delivery_date", "delivery_date_store", "note"])
        moves = await self._search_read("stock.move", [("origin", "in", [f"purchase.line,{x['id']}" for x in lines]),
                                                       ("state", "=", "done")],
                                        ["origin", "quantity", "from_location.type", "to_location.type"])
        received: dict[int, float] = {}
        for mv in moves:
            line_id = int(str(mv["origin"]).split(",")[1])
            sign = 1 if mv["from_location."]["type"] == "supplier" else -1 if mv["to_location."]["type"] == "supplier" \
                else 0
            received[line_id] = received.get(line_id, 0.0) + sign * mv["quantity"]
        out = []
        for p in purchases:
            po_lines = []
            for x in (x for x in lines if x["purchase"] == p["id"]):
                got = int(received.get(x["id"], 0.0))
                status = ("cancelled" if p["state"] == "cancelled" else "received" if got >= x["quantity"]
                          else "closed" if p["state"] == "done" else "open")
                note = x.get("note") or ""
                po_lines.append({"line_id": str(x["id"]), "sku": (x.get("product.") or {}).get("code"),
                                 "requisition_id": note.rsplit(":", 1)[-1] if ":requisition:" in note else None,
                                 "qty": int(x["quantity"]), "unit": (x.get("unit.") or {}).get("symbol") or "unit",
                                 "unit_price": x["unit_price"],
                                 # the incoming moves' planned date (what the supplier confirmed), else
                                 # the date the line was ordered for
                                 "expected_ms": to_ms(x.get("delivery_date") or x.get("delivery_date_store")),
                                 "qty_received": got, "status": status})
            out.append({"tryton_id": p["id"], "po_id": p["number"] or str(p["id"]),
                        "supplier": (p.get("party.") or {}).get("code") or "",
                        "status": {"cancelled": "cancelled", "done": "closed"}.get(p["state"], "open"),
                        "ordered_ms": to_ms(p.get("purchase_date")) or 0, "lines": po_lines})
        return out

    # ------------------------------------------------------------------ catalog, cash

    async def catalog(self) -> list[dict[str, Any]]:
        products = await self._search_read("product.product", [("purchasable", "=", True)],
                                           ["code", "name", "template"])
        products = [p for p in products if p.get("code")]
        if not products:
            return []
        gtins = {row["product"]: row["code"] for row in await self._search_read(
            "product.identifier", [("product", "in", [p["id"] for p in products]), ("type", "=", "ean")],
            ["product", "code"])}
        sources = await self._search_read("purchase.product_supplier",
                                          [("template", "in", sorted({p["template"] for p in products}))],
                                          ["template", "product", "party.code", "party.name", "sequence",
                                           "lead_time", "prices"], order=[("sequence", "ASC"), ("id", "ASC")])
        prices = await self._search_read("purchase.product_supplier.price",
                                         [("product_supplier", "in", [s["id"] for s in sources])],
                                         ["product_supplier", "quantity", "unit_price"])
        out = []
        for p in products:
            suppliers: list[dict[str, Any]] = []
            for s in (s for s in sources if s["template"] == p["template"] and s.get("product") in (None, p["id"])):
                code = (s.get("party.") or {}).get("code")
                if not code or s.get("lead_time") is None:
                    log.warning("Tryton supplier %s of %s has no %s: left out of the catalog", code or s["id"],
                                p["code"], "party code" if not code else "lead time")
                    continue
                tiers = sorted((x for x in prices if x["product_supplier"] == s["id"]), key=lambda x: x["quantity"])
                suppliers.append({"supplier": code, "name": (s.get("party.") or {}).get("name") or code,
                                  "priority": len(suppliers) + 1, "lead_time_days": s["lead_time"] / 86400,
                                  "unit_price": tiers[0]["unit_price"] if tiers else 0.0,
                                  "moq": max(1, int(tiers[0]["quantity"])) if tiers else 1, "pack_multiple": 1})
            out.append({"sku": p["code"], "gtin": gtins.get(p["id"]), "description": p.get("name") or "",
                        "unit_weight_g": None, "suppliers": suppliers})
        return out

    async def cash(self, site: str) -> float | None:
        return None

    # ------------------------------------------------------------------ receipts, returns

    async def _lot(self, product_id: int, number: str, expiry: str | None) -> int:
        """The stock.lot of this number for the product, made if new (with its expiry when Tryton keeps one)."""
        row = _first(await self._search_read("stock.lot", [("number", "=", number), ("product", "=", product_id)],
                                             ["id"]))
        if row is not None:
            return int(row["id"])
        if self._lot_fields is None:
            self._lot_fields = set(await self.rpc.model("stock.lot", "fields_get", []))
        values: dict[str, Any] = {"number": number, "product": product_id}
        if expiry and "expiration_date" in self._lot_fields:  # module stock_lot_sled
            values["expiration_date"] = dt.date.fromisoformat(expiry)
        (lot_id,) = await self.rpc.model("stock.lot", "create", [values])
        return int(lot_id)

    async def post_receipt(self, key: str, receipt: dict[str, Any]) -> dict[str, Any]:
        done = await self._search_read("stock.shipment.in", [("reference", "like", f"{key}%")],
                                       ["state", "incoming_moves"])
        if done and all(s["state"] == "done" for s in done):  # booked by an earlier attempt
            return await self._booking(receipt, [m for s in done for m in s["incoming_moves"]])
        wanted = [(str(x["po_id"]), str(x["line_id"]), int(x["qty"])) for x in receipt.get("po_lines", [])]
        if not wanted and receipt.get("po_ref"):  # a PO the hub does not hold: match it here by number
            wanted = await self._lines_numbered(str(receipt["po_ref"]), str(receipt["sku"]), int(receipt["qty"]))
        moves_by_party: dict[int, list[int]] = {}
        for po_id, line_id, qty in wanted:
            line = _first(await self._search_read(
                "purchase.line", [("id", "=", int(line_id)), ("purchase.number", "=", po_id)],
                ["product", "purchase.party", "moves"])) if line_id.isdigit() else None
            if line is None:
                continue
            moves = await self._search_read("stock.move", [("id", "in", line["moves"]), ("state", "=", "draft"),
                                                           ("from_location.type", "=", "supplier")],
                                            ["quantity", "shipment"], order=[("id", "ASC")])
            # moves already on one of this receipt's shipments (an attempt cut short) count first
            mine = [m for m in moves if m["shipment"] and m["shipment"].split(",")[1] in
                    {str(s["id"]) for s in done}]
            free = [m for m in moves if not m["shipment"]]
            taken = sum(m["quantity"] for m in mine)
            chosen = [m["id"] for m in mine]
            for mv in free:
                if taken >= qty:
                    break
                take = min(mv["quantity"], qty - taken)
                if take < mv["quantity"]:  # split: the rest stays on order
                    await self.rpc.model("stock.move", "copy", [mv["id"]], {"quantity": mv["quantity"] - take})
                values: dict[str, Any] = {"quantity": take}
                if receipt.get("lot"):
                    values["lot"] = await self._lot(line["product"], str(receipt["lot"]), receipt.get("expiry"))
                await self.rpc.model("stock.move", "write", [mv["id"]], values)
                chosen.append(mv["id"])
                taken += take
            if chosen:
                moves_by_party.setdefault(line["purchase."]["party"], []).extend(chosen)
        booked: list[int] = []
        for n, (party, move_ids) in enumerate(sorted(moves_by_party.items())):
            reference = key if n == 0 else f"{key}#{n + 1}"
            booked.extend(move_ids)
            await self._ship_in(reference, party, move_ids, receipt)
        return await self._booking(receipt, booked)

    async def _lines_numbered(self, number: str, sku: str, qty: int) -> list[tuple[str, str, int]]:
        """The open lines of the SKU on the purchase numbered `number` (case and spaces aside)."""
        lines = await self._search_read("purchase.line", [("purchase.number", "ilike", number.strip()),
                                                          ("purchase.state", "=", "processing"),
                                                          ("product.code", "=", sku)],
                                        ["purchase.number"], order=[("id", "ASC")])
        return [(row["purchase."]["number"], str(row["id"]), qty) for row in lines]

    async def _ship_in(self, reference: str, party: int, move_ids: list[int], receipt: dict[str, Any]) -> None:
        """A supplier shipment over these incoming moves, received and done (resumes one cut short)."""
        wh = await self.warehouse()
        row = _first(await self._search_read("stock.shipment.in", [("reference", "=", reference)],
                                             ["state", "inventory_moves"]))
        if row is None:
            (ship_id,) = await self.rpc.model("stock.shipment.in", "create", [{
                "supplier": party, "warehouse": wh["id"], "warehouse_input": wh["input_location"],
                "warehouse_storage": wh["storage_location"], "reference": reference,
                "effective_date": to_date(int(receipt["received_ms"])), "incoming_moves": [("add", move_ids)]}])
            state = "draft"
        else:
            ship_id, state = row["id"], row["state"]
        if state == "draft":
            await self.rpc.model("stock.shipment.in", "receive", [ship_id])
            state = "received"
        if state == "received":
            await self._put_away(ship_id, str(receipt.get("location") or ""))
            await self.rpc.model("stock.shipment.in", "do", [ship_id])

    async def _put_away(self, ship_id: int, location: str) -> None:
        """Inventory moves go to the Tryton location whose code is the hub's bin, when there is one."""
        if not location:
            return
        loc = _first(await self._search_read("stock.location", [("code", "=", location), ("type", "=", "storage")],
                                             ["id"]))
        if loc is None:
            return  # Tryton does not keep this bin: the warehouse's storage, as Tryton chose
        (ship,) = await self.rpc.model("stock.shipment.in", "read", [ship_id], ["inventory_moves"])
        if ship["inventory_moves"]:
            await self.rpc.model("stock.move", "write", ship["inventory_moves"], {"to_location": loc["id"]})

    async def _booking(self, receipt: dict[str, Any], move_ids: list[int]) -> dict[str, Any]:
        """What was booked to each PO line, as the contract's ReceiptAnswer."""
        moves = await self._search_read("stock.move", [("id", "in", move_ids)], ["origin", "quantity"]) \
            if move_ids else []
        per_line: dict[str, float] = {}
        for mv in moves:
            if str(mv.get("origin") or "").startswith("purchase.line,"):
                line_id = str(mv["origin"]).split(",")[1]
                per_line[line_id] = per_line.get(line_id, 0.0) + mv["quantity"]
        numbers = {str(r["id"]): r["purchase."]["number"] for r in await self._search_read(
            "purchase.line", [("id", "in", [int(x) for x in per_line])], ["purchase.number"])} if per_line else {}
        matched = [{"po_id": numbers[line_id], "line_id": line_id, "qty": int(qty)}
                   for line_id, qty in per_line.items()]
        return {"ok": True, "receipt_id": receipt["receipt_id"], "matched": matched,
                "unmatched_qty": int(receipt["qty"]) - sum(m["qty"] for m in matched)}

    async def return_to_supplier(self, key: str, ret: dict[str, Any]) -> dict[str, Any]:
        row = _first(await self._search_read("stock.shipment.in.return", [("reference", "=", key)],
                                             ["state", "number"]))
        if row is None:
            line = _first(await self._search_read(
                "purchase.line", [("id", "=", int(ret["line_id"])), ("purchase.number", "=", str(ret["po_id"]))],
                ["product", "unit", "unit_price", "purchase.party", "purchase.currency"])) \
                if str(ret["line_id"]).isdigit() else None
            if line is None:
                raise CentralError(f"{self.rpc.where} has no line {ret['line_id']} on purchase {ret['po_id']} to "
                                   "return goods against", retryable=False)
            wh = await self.warehouse()
            (party,) = await self.rpc.model("party.party", "read", [line["purchase."]["party"]],
                                            ["supplier_location"])
            move: dict[str, Any] = {"product": line["product"], "quantity": float(ret["qty"]), "unit": line["unit"],
                                    "from_location": wh["storage_location"], "to_location": party["supplier_location"],
                                    "origin": f"purchase.line,{line['id']}", "unit_price": Decimal(str(line["unit_price"])),
                                    "currency": line["purchase."]["currency"]}
            if ret.get("lot"):
                move["lot"] = await self._lot(line["product"], str(ret["lot"]), None)
            (ship_id,) = await self.rpc.model("stock.shipment.in.return", "create", [{
                "supplier": party["id"], "from_location": wh["storage_location"],
                "to_location": party["supplier_location"], "reference": key, "moves": [("create", [move])]}])
            row = {"id": ship_id, "state": "draft"}
        if row["state"] == "draft":
            await self.rpc.model("stock.shipment.in.return", "wait", [row["id"]])
            row["state"] = "waiting"
        if row["state"] == "waiting":
            await self.rpc.model("stock.shipment.in.return", "assign_try", [row["id"]])
            (row,) = await self.rpc.model("stock.shipment.in.return", "read", [row["id"]], ["state", "number"])
            if row["state"] != "assigned":
                raise CentralError(f"{self.rpc.where} could not take {ret['qty']} of {ret['sku']} out of stock for "
                                   f"return {key}: not enough in the warehouse there", retryable=False)
        if row["state"] == "assigned":
            await self.rpc.model("stock.shipment.in.return", "do", [row["id"]])
        return {"ok": True, "return_id": ret["return_id"], "po_id": ret["po_id"], "line_id": ret["line_id"],
                "qty": int(ret["qty"])}
