SELECT to_regclass('sites') IS NOT NULL
