"""ROS-free core of person_search: video, detection + tracking, encoders, gallery, query.

Nothing under this package imports rclpy or message packages.
"""
