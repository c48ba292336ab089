"""Controllers: QObjects that turn view intents into work on workers and hold workspace state.
The only layer that starts threads."""
