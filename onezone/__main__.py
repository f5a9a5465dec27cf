from onezone.cli import main

raise SystemExit(main())
