"""Native eBPF probes loaded through BCC, for nodes where Tetragon is absent or unreachable.

detect.py says what the kernel and BCC allow (and so the posture this source can
deliver); probes/ hold one BPF program part per concern (exec, syscalls,
uprobes, USDT); loader.py compiles and attaches them (against headershim.py's
header tree when the kernel's headers are missing); events.py turns their
records into RuntimeCallEvents; source.py streams those records into the
agent's EventQueue like the Tetragon sources do. See docs/native-probes.md.
"""
