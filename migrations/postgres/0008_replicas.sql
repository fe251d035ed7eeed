-- The replicas that joined: each holds the session advisory lock on its id while it lives, so the
-- live ones are the rows whose lock is held. Broadcasts share their rate among them.
CREATE TABLE replicas (
    id BIGINT PRIMARY KEY
);
