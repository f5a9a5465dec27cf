from kms.main import main

raise SystemExit(main())
