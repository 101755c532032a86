BEGIN TRANSACTION;
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    last_used_ms INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE users (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
, session_gen INTEGER NOT NULL DEFAULT 0);
INSERT INTO "users" VALUES('admin','admin','$argon2id$v=19$m=65536,t=3,p=4$VEC4Ip0EaQjZvjcP6ulBFQ$mRpR24+d3wQvs1PX73Te+XiYbNhW8iBas4aLdSivrqI',1796281763450,0,0);
COMMIT;
