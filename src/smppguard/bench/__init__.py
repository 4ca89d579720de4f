"""The benchmarks (``smppguard bench``): the proxy between a load generator and a sink SMSC, each in a process of
its own, measured from outside.

- proxy.py: the submit path, straight and through the proxy, with the rules on, off or both in alternating rounds;
- against.py: the same scenario on this code and on another git revision, in alternating rounds (``--against``);
- soak.py: a storm of refusals past the frequency cap, and what it costs the store;
- deliver.py: replies and receipts from the SMSC to a receiver, with the deliver path's learning off and on;
- hold.py: messages held by quiet hours, released all at once, with live traffic beside them;
- prune.py: live traffic while the retention delete runs on a large send history;
- sync.py: [mqtt] off and on, a second node listening; and the soak of three sidecars through a broker that dies.

What they share: load.py, the load generator (transmitter binds that keep a window of submit_sm outstanding);
procs.py, the child processes (started in a temporary folder, read off /proc, always stopped) and the report;
fill.py, a store filled as a large sender's is.
"""
