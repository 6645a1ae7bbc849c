"""Demo videos generated from the photos that ship with ultralytics (no download needed).

Not part of the runtime: the CLI (``person-search demo`` / ``run --sample`` / ``--crowd``),
the tests and the benchmarks use them; ``person_search.core`` never imports them.

* :mod:`~person_search.demo.sample`: ``make_sample_video`` (a camera panning over two
  photos) and ``sample_images`` (the photos themselves);
* :mod:`~person_search.demo.crowd`: ``make_crowd_video`` (a seeded crowded street of
  walkers cut out of the photos).
"""
