"""Text views: each turns a command's typed result into what rich prints (JSON needs none)."""
