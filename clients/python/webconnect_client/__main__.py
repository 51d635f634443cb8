from webconnect_client.cli import main

raise SystemExit(main())
