SELECT toUInt32(now())
