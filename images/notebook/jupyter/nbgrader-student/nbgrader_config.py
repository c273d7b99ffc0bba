# A student's server in a graded course (hubfleet roles/grading sets JUPYTER_CONFIG_PATH to this folder):
# assignments come and go through the course's exchange service on the hub.
import os

from hubfleet_nbgrader_exchange import exchange_config

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = os.environ.get("HUBFLEET_COURSE_ID", "")
exchange_config(c)
