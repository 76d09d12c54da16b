"""`python -m commands` (e.g. under `accelerate launch -m commands dpo ...`)."""

from commands import main

main()
