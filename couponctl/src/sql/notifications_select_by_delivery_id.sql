-- One notification as a JSON object, dead or not.
SELECT row_to_json(n)::text FROM notifications n WHERE delivery_id = $1
