# /// script
# requires-python = ">=3.10"
# dependencies = ["pandas"]
# ///
"""Count the points of each chunk that fall inside the unit circle."""


def count_inside(points, radius: float = 1.0) -> dict:
    inside = int(((points["x"] ** 2 + points["y"] ** 2) <= radius**2).sum())
    return {"rows": len(points), "inside": inside, "first_row": int(points.index[0])}
