internal import CRDMA
/// Connection management over librdmacm (issue 5).
public enum RDMACMModule {}
