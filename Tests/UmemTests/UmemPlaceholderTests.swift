import Testing
@testable import Umem
@Test func umemPlaceholder() {}
