"""The engine: data units, triggers, links, steps, workflows, executors, events."""
