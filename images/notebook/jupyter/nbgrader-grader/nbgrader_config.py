# The course's grader (the teachers' formgrader, hubfleet roles/grading): the course directory is the
# server's root, assignments are released and collected through the course's exchange service.
import os

from hubfleet_nbgrader_exchange import exchange_config

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = os.environ.get("HUBFLEET_COURSE_ID", "")
c.CourseDirectory.root = os.environ.get("HUBFLEET_COURSE_ROOT", "/home/jovyan/course")
exchange_config(c)
