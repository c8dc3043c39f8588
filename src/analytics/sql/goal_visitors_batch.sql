-- check-binds: [1], 1700000000, [0], [1], [1700000000], [1700000600], ['pageview'], [0], [0], [''], ['/blog/'], [''], [''], [''], [0], [100], ['plan\0pro'], [1], [1], ['coupon'], [1], [1]
-- Distinct visitors per request: request i asks for the visitors who
-- completed one goal on one site between two minutes. Requests come as
-- parallel arrays (one element per request), because ClickHouse 18.16
-- parses long arrays of tuples very slowly and cannot match a regex held
-- in a column: paths are matched as exact, any, or a glob of a prefix, up
-- to two middle parts (in order) and a suffix. Property filters come as
-- flat arrays with each request's offset and length: `key\0value` pairs
-- that must be as given and keys that must read as '' (absent or empty);
-- an event's property is its first value for the key, as
-- `prop_values[indexOf(prop_keys, key)]` reads it.
SELECT r_idx, uniqMerge(visitors)
FROM (
    SELECT site_id, minute, name, pathname, scroll_depth, visitors,
           arrayFilter((p, n) -> n = 1,
                       arrayMap((k, v) -> concat(k, '\0', v), prop_keys, prop_values),
                       arrayEnumerateUniq(prop_keys)) AS e_pairs,
           arrayFilter((k, v, n) -> v != '' AND n = 1,
                       prop_keys, prop_values, arrayEnumerateUniq(prop_keys)) AS e_set
    FROM {database}.webhooks_goal_minutes
    WHERE site_id IN (SELECT arrayJoin(CAST(? AS Array(UInt64))))
      AND minute >= toDateTime(?)
) AS e
ALL INNER JOIN (
    SELECT
        a_idx[i] AS r_idx, a_site[i] AS site_id, a_from[i] AS r_from, a_to[i] AS r_to,
        a_name[i] AS r_name, a_any[i] AS r_any, a_exact[i] AS r_exact, a_path[i] AS r_path,
        a_prefix[i] AS r_prefix, a_m1[i] AS r_m1, a_m2[i] AS r_m2, a_suffix[i] AS r_suffix,
        a_min[i] AS r_min, a_max[i] AS r_max,
        arraySlice(a_pairs, a_pairs_at[i], a_pairs_len[i]) AS r_pairs,
        arraySlice(a_unset, a_unset_at[i], a_unset_len[i]) AS r_unset
    FROM (
        SELECT
            CAST(? AS Array(UInt32)) AS a_idx, CAST(? AS Array(UInt64)) AS a_site,
            CAST(? AS Array(UInt32)) AS a_from, CAST(? AS Array(UInt32)) AS a_to,
            CAST(? AS Array(String)) AS a_name, CAST(? AS Array(UInt8)) AS a_any,
            CAST(? AS Array(UInt8)) AS a_exact, CAST(? AS Array(String)) AS a_path,
            CAST(? AS Array(String)) AS a_prefix, CAST(? AS Array(String)) AS a_m1,
            CAST(? AS Array(String)) AS a_m2, CAST(? AS Array(String)) AS a_suffix,
            CAST(? AS Array(UInt8)) AS a_min, CAST(? AS Array(UInt8)) AS a_max,
            CAST(? AS Array(String)) AS a_pairs, CAST(? AS Array(UInt32)) AS a_pairs_at,
            CAST(? AS Array(UInt32)) AS a_pairs_len, CAST(? AS Array(String)) AS a_unset,
            CAST(? AS Array(UInt32)) AS a_unset_at, CAST(? AS Array(UInt32)) AS a_unset_len
    )
    ARRAY JOIN arrayEnumerate(a_idx) AS i
) AS r USING site_id
WHERE minute >= toDateTime(r_from) AND minute <= toDateTime(r_to)
  AND name = r_name
  AND scroll_depth >= r_min AND scroll_depth <= r_max
  AND (
      r_any = 1
      OR (r_exact = 1 AND pathname = r_path)
      OR (r_exact = 0
          AND length(pathname) >= length(r_prefix) + length(r_suffix)
          AND substring(pathname, 1, length(r_prefix)) = r_prefix
          AND substring(pathname, length(pathname) - length(r_suffix) + 1) = r_suffix
          AND (r_m1 = ''
               OR position(substring(pathname, length(r_prefix) + 1,
                                     length(pathname) - length(r_prefix) - length(r_suffix)), r_m1) > 0)
          AND (r_m2 = ''
               OR position(substring(substring(pathname, length(r_prefix) + 1,
                                               length(pathname) - length(r_prefix) - length(r_suffix)),
                                     position(substring(pathname, length(r_prefix) + 1,
                                                        length(pathname) - length(r_prefix) - length(r_suffix)), r_m1)
                                     + length(r_m1)), r_m2) > 0))
  )
  AND hasAll(e_pairs, r_pairs)
  AND NOT hasAny(e_set, r_unset)
GROUP BY r_idx
