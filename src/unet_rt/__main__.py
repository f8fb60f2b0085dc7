import sys

from unet_rt.cli.app import main

sys.exit(main())
