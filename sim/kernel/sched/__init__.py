"""kernel/sched/: CPUs, tasks, run queues, preemption models and spinlocks."""
