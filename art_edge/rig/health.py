"""The rig's health, from a snapshot of it: ok, degraded or failed for each camera, each output
and the rig as a whole, judged by recognition's progress (a decision in the last `stale_after`
seconds), not by capture alone.

    report = rig_health(rig.snapshot(), stale_after=10)
    report["status"]             # "ok", "degraded" or "failed"
    report["cameras"]["pool"]    # {"status": "failed", "reason": "no frame for 42 s (…)", …}

A camera is ok while it is decided; degraded while it is decided but reconnecting; failed when
no decision came for `stale_after` seconds (its frames stopped, or they arrive and nothing is
decided), or when it ended with an error. An output is ok, degraded (paused by errors, its
events waiting for their endpoint, dropping) or failed (a write that does not return, events
dropped beyond the spool). The rig is failed when no camera is being decided, or its loop
stopped going round; degraded when anything is not ok; ok otherwise. /healthz, the service
watchdog and the summary read it.
"""

from __future__ import annotations

from art_edge.rig.outlets import DEGRADED, FAILED, OK
from art_edge.rig.report import CameraSnapshot, RigSnapshot

AWAY = ("connecting", "reconnecting")


def camera_health(cam: CameraSnapshot, stale_after: float) -> tuple[str, str]:
    """(ok | degraded | failed, why) of one camera."""
    if cam.ended is not None:
        return (FAILED, cam.error) if cam.error else (OK, f"ended ({cam.ended})")
    if cam.since_decision_s <= stale_after:
        if cam.status.startswith(AWAY):
            return DEGRADED, cam.problem or cam.status
        return OK, ""
    if cam.idle_s <= stale_after:
        return FAILED, f"frames arrive, but no decision for {cam.since_decision_s:.0f} s"
    what = f"{cam.status}: {cam.problem}" if cam.problem else cam.status
    return FAILED, f"no frame for {cam.idle_s:.0f} s ({what})"


def rig_health(snap: RigSnapshot, stale_after: float) -> dict:
    """The whole report (see the module docstring), as /healthz answers it."""
    cameras = {}
    for cam in snap.cameras:
        status, reason = camera_health(cam, stale_after)
        cameras[cam.name] = {"status": status, "reason": reason, "fps": round(cam.fps, 2),
                             "since_decision_s": round(cam.since_decision_s, 1)}  # fmt: skip
    outputs = {o.name: {"status": o.status, "reason": o.reason, **o.counts} for o in snap.outputs}
    if snap.ended is None and snap.loop_idle_s > stale_after:
        status, reason = FAILED, f"the rig's loop has not gone round for {snap.loop_idle_s:.0f} s"
    elif all(c["status"] == FAILED for c in cameras.values()):
        status, reason = FAILED, "no camera is being decided"
    else:
        troubled = [n for n, c in {**cameras, **outputs}.items() if c["status"] != OK]
        status = DEGRADED if troubled else OK
        reason = f"not ok: {', '.join(troubled)}" if troubled else ""
    return {"status": status, "reason": reason, "cameras": cameras, "outputs": outputs}


def status_line(snap: RigSnapshot, stale_after: float) -> str:
    """One line for a service manager (systemd's STATUS=): the rig's health and each camera's
    FPS."""
    report = rig_health(snap, stale_after)
    parts = []
    for name, cam in report["cameras"].items():
        part = f"{name} {cam['fps']:.1f} FPS"
        parts.append(part if cam["status"] == OK else f"{part} ({cam['status']})")
    return f"{report['status']}: " + ", ".join(parts)


def recognition_keeps_up(snap: RigSnapshot, stale_after: float) -> bool:
    """Whether the rig's recognition keeps up (the service watchdog's test): its loop goes round,
    and no camera delivers frames without getting decisions. Cameras that are away do not count
    against it: the process is not stuck, it waits for them."""
    if snap.loop_idle_s > stale_after:
        return False
    return not any(
        c.ended is None and c.idle_s <= stale_after and c.since_decision_s > stale_after
        for c in snap.cameras
    )
