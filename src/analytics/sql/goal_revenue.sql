-- check-binds: 1, 1700000000, 1700000600, 'Purchase', 'EUR', ['plan\0pro'], ['coupon']
-- The revenue of one event goal's completions in a range of minutes, from
-- the events table: the sum of `revenue_reporting_amount` (Plausible's
-- amount in the goal's currency) over events of the goal's name, in its
-- currency, with its property filters (as in goal_visitors.sql, on the
-- event's `meta.key` / `meta.value`). In thousandths (the amount's three
-- decimal places) as an integer: engines print decimals differently (18.16
-- `12.500`, current releases `12.5`), integers alike. Summed as
-- Decimal128 and held within ±9e15 before scaling, so that no amount a
-- visitor can send (Decimal(18, 3) holds up to 1e15) overflows and fails
-- the tick.
SELECT toInt64(greatest(least(ifNull(sum(toDecimal128(revenue_reporting_amount, 3)),
                                     toDecimal128(0, 3)),
                              toDecimal128(9000000000000000, 3)),
                        toDecimal128(-9000000000000000, 3)) * 1000)
FROM {database}.{events_table}
WHERE site_id = ?
  AND timestamp >= toDateTime(?) AND timestamp < toDateTime(?) + 60
  AND name = ?
  AND revenue_reporting_currency = ?
  AND hasAll(arrayFilter((p, n) -> n = 1,
                         arrayMap((k, v) -> concat(k, '\0', v), `meta.key`, `meta.value`),
                         arrayEnumerateUniq(`meta.key`)),
             CAST(? AS Array(String)))
  AND NOT hasAny(arrayFilter((k, v, n) -> v != '' AND n = 1,
                             `meta.key`, `meta.value`, arrayEnumerateUniq(`meta.key`)),
                 CAST(? AS Array(String)))
