"""Zero-shot evaluation of any LLM as a recommender: the same as `llmrec eval zeroshot` (see `--help`).

OPENAI_API_KEY=... python eval/zeroshot.py --base_url https://api.openai.com/v1 --model gpt-4o-mini \
    --data runs/ml-100k/dataset --n_users 200 --output runs/ml-100k/zeroshot-gpt-4o-mini
"""

import sys

from llmrec.cli import run

if __name__ == "__main__":
    sys.exit(run("llmrec.zeroshot.run", sys.argv[1:]))
