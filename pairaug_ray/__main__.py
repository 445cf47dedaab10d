from pairaug_ray.cli import main

raise SystemExit(main())
