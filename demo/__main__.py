"""`make demo`: start the platform (embedded services unless configured), write the digits, run the loop over REST.

python -m demo [--rounds 2] [--batch 100] [--epochs 15]
"""

import argparse
import sys
import time

from demo.digits import write_digits
from demo.loop import LoopSettings, run_loop
from demo.serving import serving_platform
from devstack.__main__ import DEMO_TENANT, LOCAL_READ_ROOT


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=LoopSettings.rounds)
    parser.add_argument("--batch", type=int, default=LoopSettings.batch, help="labels revealed per round")
    parser.add_argument("--epochs", type=int, default=LoopSettings.epochs)
    args = parser.parse_args()
    # The images go in the demo tenant's folder of the local read root, the only one its imports may read.
    files = write_digits(LOCAL_READ_ROOT / DEMO_TENANT / "demo-digits")
    with serving_platform() as platform:
        outcome = run_loop(
            platform,
            files,
            LoopSettings(rounds=args.rounds, batch=args.batch, epochs=args.epochs),
            project_name=f"digits loop {time.strftime('%Y-%m-%d %H:%M:%S')}",
        )
    print("\nHeld-out accuracy of every model (the same held-out slice for all):")
    print(outcome.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
