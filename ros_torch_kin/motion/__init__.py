"""The motion pipeline (pure torch; never imports ROS): goals -> seeds -> global search ->
optimisation -> checking -> timing. ``solve_trajectory`` is the one entry point."""
