-- One row per review. Ordered by the incremental cursor so a nightly sync's watermark
-- advances exactly past what was delivered.
SELECT review_id, customer_email, customer_phone, rating, title, written_at, updated_at
FROM reviews
ORDER BY updated_at, review_id;
