"""Text views of command results (rich renderables), kept out of the commands' cores."""
