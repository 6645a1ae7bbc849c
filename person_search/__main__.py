from person_search.cli import main

raise SystemExit(main())
