"""What serves a running rig over the network: Prometheus metrics and the dashboard. Both are
outputs of the rig (art_edge.rig.observers) that read its snapshots (art_edge.rig.report) only.
"""
