"""`qwenops install|uninstall systemd`: the core (run.py) plans every action, checking each path, then
carries them out."""
