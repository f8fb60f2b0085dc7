import sys

from unet_rt.cli import main

sys.exit(main())
