import Testing
@testable import RDMACM
@Test func rdmacmPlaceholder() {}
