/// Placeholder; the Phyr module is built in issue 3.
public enum PhyrModule {}
