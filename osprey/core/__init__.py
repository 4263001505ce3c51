"""What everything may use: errors, constants, devices and dtypes, image intake, mask I/O, the
bounded LRU map, command-line options, CPU priorities, the allocator's settings, the released
prompt strings and a chat-API client. Imports nothing else of ours (``sam_bridge`` uses only
this layer of ``osprey``)."""
