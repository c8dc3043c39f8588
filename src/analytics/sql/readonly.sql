-- The user's `readonly` setting: 1 forbids changing any setting.
SELECT toUInt8(value) FROM system.settings WHERE name = 'readonly'
