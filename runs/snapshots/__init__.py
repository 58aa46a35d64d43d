"""Snapshots of source folders: capturing them, their git facts, archives, the upload plan."""
