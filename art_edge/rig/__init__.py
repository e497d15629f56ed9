"""The rig: several cameras in one process, and what it makes of them.

config (its settings, the flags of art-edge), camera, pipeline (the reader and head threads),
loop (Rig: the shared encoder batch), segments, clips, sinks (event outputs), observers (what an
output of the rig implements), report (counters and the snapshots every reader takes). Imports the
ground, the runtime and video; never art_edge.serve or the front doors (art_edge.api, cli).
"""
