-- The hand-written DuckDB diff of a realistic cycle: what a competent engineer writes for the
-- same two exports and mapping file, and bench.py's baseline for `reconcile run` (issue 16).
-- Both exports read with read_csv; client and item names normalised (case, accents, marks,
-- `&`/`and`, a leading "The", trailing legal forms, the Autotask period suffix); the mapping
-- file applied to clients (by id or name) and items; charges summed per client, item, service
-- period and currency; a full outer join keeps every key whose quantity, net or tax differ.
-- bench.py fills in ${autotask}, ${halopsa}, ${mapping} and ${differences} (paths).

CREATE OR REPLACE TEMP MACRO norm(s) AS trim(regexp_replace(regexp_replace(
    replace(replace(lower(strip_accents(s)), '’', ''''), '&', ' and '),
    '[.'']', '', 'g'), '[^a-z0-9]+', ' ', 'g'));
CREATE OR REPLACE TEMP MACRO client_key(s) AS regexp_replace(regexp_replace(norm(s),
    '^the ', ''),
    '( (ltd|limited|llp|llc|inc|incorporated|plc|public limited company|corp|corporation|co'
    || '|company|gmbh|bv|pty))+\z', '');

-- Names are normalised once per distinct spelling, not once per line.
CREATE TEMP TABLE a_raw AS SELECT * FROM read_csv('${autotask}', all_varchar = true);
CREATE TEMP TABLE h_raw AS SELECT * FROM read_csv('${halopsa}', all_varchar = true)
WHERE lower(IDisGroupDesc) <> 'true' AND lower(IDisInactive) <> 'true';
CREATE TEMP TABLE a_clients AS
SELECT cust_name, client_key(cust_name) AS client FROM (SELECT DISTINCT cust_name FROM a_raw);
CREATE TEMP TABLE a_items AS
SELECT item_name, norm(regexp_replace(item_name, '\s*\[[^\]]*\]\s*\z', '')) AS item,
       try_strptime(regexp_extract(item_name, '\[(.*) - ', 1), '%b %d, %Y')::DATE AS start,
       try_strptime(regexp_extract(item_name, ' - (.*)\]', 1), '%b %d, %Y')::DATE AS "end"
FROM (SELECT DISTINCT item_name FROM a_raw);
CREATE TEMP TABLE h_clients AS
SELECT Aareadesc, client_key(Aareadesc) AS client FROM (SELECT DISTINCT Aareadesc FROM h_raw);
CREATE TEMP TABLE h_items AS
SELECT IDItem_ShortDescription, norm(IDItem_ShortDescription) AS item
FROM (SELECT DISTINCT IDItem_ShortDescription FROM h_raw);

CREATE TEMP TABLE a AS
SELECT c.client, r.account_id AS client_id, i.item,
       coalesce(strptime(r.service_period_start_date, '%m/%d/%Y')::DATE, i.start) AS period_start,
       coalesce(strptime(r.service_period_end_date, '%m/%d/%Y')::DATE, i."end") AS period_end,
       'GBP' AS currency,
       CAST(r.quantity AS DECIMAL(18, 4)) AS quantity,
       CAST(r.extended_price AS DECIMAL(18, 2)) AS net,
       CAST(r.total_tax_amount AS DECIMAL(18, 2)) AS tax
FROM a_raw r JOIN a_clients c USING (cust_name) JOIN a_items i USING (item_name);

CREATE TEMP TABLE h AS
SELECT c.client, r.IHaarea AS client_id, i.item,
       strptime(r.IDstartdate, '%d/%m/%Y')::DATE AS period_start,
       strptime(r.IDenddate, '%d/%m/%Y')::DATE AS period_end,
       r.currencyisocode AS currency,
       CAST(r.IDQty_Order AS DECIMAL(18, 4)) AS quantity,
       CAST(r.IDNet_Amount AS DECIMAL(18, 2)) AS net,
       CAST(r.IDTax_Amount AS DECIMAL(18, 2)) AS tax
FROM h_raw r JOIN h_clients c USING (Aareadesc) JOIN h_items i USING (IDItem_ShortDescription);

CREATE TEMP TABLE mapping AS SELECT * FROM read_csv('${mapping}', all_varchar = true);

CREATE TEMP TABLE client_map AS
WITH m AS (SELECT autotask, halopsa FROM mapping WHERE kind = 'client'),
     hk AS (SELECT DISTINCT client, client_id FROM h),
     ak AS (SELECT DISTINCT client, client_id FROM a),
     mh AS (SELECT m.autotask, hk.client AS h_client FROM m JOIN hk ON hk.client_id = m.halopsa
            UNION
            SELECT m.autotask, hk.client FROM m JOIN hk ON hk.client = client_key(m.halopsa))
SELECT mh.h_client, ak.client AS a_client FROM mh JOIN ak ON ak.client_id = mh.autotask
UNION
SELECT mh.h_client, ak.client FROM mh JOIN ak ON ak.client = client_key(mh.autotask);

CREATE TEMP TABLE item_map AS
SELECT DISTINCT norm(halopsa) AS h_item, norm(autotask) AS a_item FROM mapping
WHERE kind = 'item';

CREATE TEMP TABLE differences AS
WITH at_sums AS (
    SELECT client, item, period_start, period_end, currency,
           sum(quantity) AS quantity, sum(net) AS net, sum(tax) AS tax
    FROM a GROUP BY ALL
),
halo_sums AS (
    SELECT coalesce(cm.a_client, h.client) AS client, coalesce(im.a_item, h.item) AS item,
           period_start, period_end, currency,
           sum(quantity) AS quantity, sum(net) AS net, sum(tax) AS tax
    FROM h
    LEFT JOIN client_map cm ON cm.h_client = h.client
    LEFT JOIN item_map im ON im.h_item = h.item
    GROUP BY ALL
)
SELECT coalesce(x.client, y.client) AS client, coalesce(x.item, y.item) AS item,
       coalesce(x.period_start, y.period_start) AS period_start,
       coalesce(x.period_end, y.period_end) AS period_end,
       coalesce(x.currency, y.currency) AS currency,
       x.quantity AS autotask_quantity, y.quantity AS halopsa_quantity,
       x.net AS autotask_net, y.net AS halopsa_net, x.tax AS autotask_tax, y.tax AS halopsa_tax,
       coalesce(y.net, 0) - coalesce(x.net, 0) AS net_difference
FROM at_sums x
FULL OUTER JOIN halo_sums y
  ON x.client = y.client AND x.item = y.item AND x.currency = y.currency
 AND x.period_start IS NOT DISTINCT FROM y.period_start
 AND x.period_end IS NOT DISTINCT FROM y.period_end
WHERE x.quantity IS DISTINCT FROM y.quantity OR x.net IS DISTINCT FROM y.net
   OR x.tax IS DISTINCT FROM y.tax;

COPY (SELECT * FROM differences ORDER BY ALL) TO '${differences}' (HEADER);
