-- Recording a delivery finds the message by its outbox row, and a block finds the lead by its
-- chat: both ran as full scans, which grew with the history.
CREATE INDEX messages_outbox ON messages (outbox_id);
CREATE INDEX leads_chat ON leads (chat_id);
