from visassist.cli import main

raise SystemExit(main())
