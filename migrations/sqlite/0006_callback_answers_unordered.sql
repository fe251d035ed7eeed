-- Answers to button presses stand outside a chat's order: they neither wait for the chat's earlier
-- messages nor hold up its later ones, so the next question goes out together with the answer.
ALTER TABLE outbox ADD COLUMN in_order BOOLEAN NOT NULL DEFAULT TRUE;

-- Claiming walks the undelivered rows in id order and stops when it has enough, instead of
-- reading and sorting the whole backlog; the chat-order check reads only the chats' open rows.
CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';
CREATE INDEX outbox_chat_open ON outbox (chat_id, id) WHERE in_order AND status IN ('pending', 'sending');
