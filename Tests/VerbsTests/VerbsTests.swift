import Testing
@testable import Verbs
@Test func placeholder() {}
