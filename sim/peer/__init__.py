"""The real kernel beside the model: a scenario run in a QEMU guest.

``vmsim peer`` translates a scenario into a guest (:mod:`sim.peer.translation`),
builds an initramfs from the host's installed packages (:mod:`sim.peer.image`),
boots it (:mod:`sim.peer.qemu`) with a busybox agent (:mod:`sim.peer.agent`)
that samples /proc and counts kernel calls with ftrace hist triggers, and turns
what the guest printed into a results folder in vmsim's own format
(:mod:`sim.peer.capture`).  The kernel model never imports this package.
"""
