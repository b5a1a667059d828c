/// Pins user memory into phyr lists (issue 4).
public enum UmemModule {}
