# Set-up (the same cell opens every notebook; tests/test_notebooks.py checks it).
# In Colab: fetch the repository and the few packages Colab lacks. Elsewhere: nothing to do.
import importlib.util
import os
import subprocess
import sys

REPO_URL = "https://github.com/attention-built-up/attention-built-up"  # as in pyproject.toml
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/attention-built-up"):
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "/content/attention-built-up"], check=True)
    missing = [p for p in ("datasets", "tokenizers", "sacrebleu", "tqdm") if importlib.util.find_spec(p) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    sys.path.insert(0, "/content/attention-built-up")
    os.chdir("/content/attention-built-up/notebooks")
