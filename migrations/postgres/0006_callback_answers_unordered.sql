-- Answers to button presses stand outside a chat's order: they neither wait for the chat's earlier
-- messages nor hold up its later ones, so the next question goes out together with the answer.
ALTER TABLE outbox ADD COLUMN in_order BOOLEAN NOT NULL DEFAULT TRUE;
