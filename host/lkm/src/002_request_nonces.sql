-- The reference LKM's store, version 2: the request log keeps the Hawk nonce of each
-- authenticated request, so that a restarted LKM still refuses a request replayed
-- within the clock-skew window (the nonces it remembers are seeded from here).
ALTER TABLE request_log ADD COLUMN nonce TEXT;
