import Testing
@testable import Phyr
@Test func placeholder() {}
