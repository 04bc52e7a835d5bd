"""`python -m vla_razor.cli ...`: the `vla-razor` command, e.g. under torchrun, which starts a module or a script
rather than a console script: `torchrun --nproc-per-node 8 -m vla_razor.cli robot sft --config ...`."""

import sys

from vla_razor.cli.main import main

sys.exit(main())
