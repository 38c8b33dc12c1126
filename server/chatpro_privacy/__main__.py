import sys

from chatpro_privacy.cli import main

sys.exit(main())
