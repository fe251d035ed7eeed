-- A chat's rows in order wait as `queued` behind its oldest undelivered one and become `pending`
-- when that one is recorded, so a claim walks only rows that can go now, however long a chat's
-- queue (the staff chat in a flood of hot leads).
DROP INDEX outbox_chat_open;
CREATE INDEX outbox_chat_open ON outbox (chat_id, id)
    WHERE in_order AND status IN ('queued', 'pending', 'sending');
